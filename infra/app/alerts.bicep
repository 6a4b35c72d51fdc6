// What pages an operator: five alerts over the signals OrgGuard and the
// platform emit. infra/README.md ("Telemetry the alerts read") names each
// signal and the code that emits it; tests/infra/test_alerts.py checks that
// the code still emits exactly what these queries look for.
//
// * dead letters: the Service Bus metric DeadletteredMessages of the queue;
// * failed actions, degraded gate answers, held cases: log lines the app
//   writes (Application Insights `traces`);
// * gate latency: the Functions host's request telemetry (`requests`).
//
// With no action group the alerts still fire and show in Azure Monitor; they
// notify nobody until actionGroupId is set.

param namePrefix string
param location string
param tags object = {}

@description('Resource id of an action group to notify (email, Teams, paging). Empty: alerts fire without notifying.')
param actionGroupId string = ''

param applicationInsightsId string
@description('Dataverse\'s namespace and queue.')
param serviceBusNamespaceId string
param serviceBusQueueName string
@description('OrgGuard\'s own namespace and the queues whose dead letters an operator must look at.')
param busNamespaceId string
param busQueueNames array

@minValue(1)
@description('A held case waiting longer than this many hours raises an alert.')
param heldCaseHours int = 24

@minValue(100)
@description('Gate p95 latency (ms) above which an alert fires; Dataverse waits on the gate and gives up at 60 s.')
param gateP95Milliseconds int = 2000

var metricActions = empty(actionGroupId) ? [] : [
  {
    actionGroupId: actionGroupId
  }
]
var logActionGroups = empty(actionGroupId) ? [] : [
  actionGroupId
]

resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-dead-letters'
  location: 'global'
  tags: tags
  properties: {
    description: 'Messages on Dataverse\'s queue were dead-lettered: OrgGuard failed on them maxDeliveryCount times. Nothing was recorded for them; list them with GET /api/deadletters or `orgguard deadletters list`, then replay or purge.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'DeadLetteredMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                serviceBusQueueName
              ]
            }
          ]
        }
      ]
    }
    autoMitigate: true
    actions: metricActions
  }
}

resource workDeadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-work-dead-letters'
  location: 'global'
  tags: tags
  properties: {
    description: 'OrgGuard dead-lettered work or a Dataverse message that can never be decided (its reason is on it). Its actions are still in the outbox; list them with GET /api/deadletters or `orgguard deadletters list`, then replay or purge.'
    severity: 2
    enabled: true
    scopes: [
      busNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'DeadLetteredMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: busQueueNames
            }
          ]
        }
      ]
    }
    autoMitigate: true
    actions: metricActions
  }
}

resource failedActions 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-failed-actions'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'OrgGuard: actions failed'
    description: 'An action (demote, promote, notify) ended failed after its retries: a decided case is not carried out in an org. See the case in the page or `orgguard cases list --state failed`, fix the cause, retry it.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message startswith "action " and message contains ") failed: "'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: logActionGroups
    }
  }
}

resource degradedGate 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-degraded-gate'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'OrgGuard: gate answered without deciding'
    description: 'The gate could not decide (ledger unavailable) and answered per ORGGUARD_GATE_ON_ERROR: saves were blocked or let through unrecorded. Check storage and the app.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message startswith "gate could not decide"'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: logActionGroups
    }
  }
}

resource heldCases 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-held-cases'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'OrgGuard: a held case is waiting'
    description: 'A case has waited for an approver longer than heldCaseHours. Approve or deny it in the page (OrgGuard.Approver).'
    severity: 3
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message startswith "held cases: " | parse message with "held cases: " held:long ", oldest " oldest_hours:real " h" | project timestamp, oldest_hours'
          metricMeasureColumn: 'oldest_hours'
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: heldCaseHours
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: logActionGroups
    }
  }
}

resource gateLatency 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-gate-latency'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'OrgGuard: gate p95 latency'
    description: 'The 95th percentile of gate answers is above gateP95Milliseconds: admins in Dataverse wait on every Test & Enable.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'requests | where url contains "/api/dataverse/gate" | summarize p95_ms = percentile(duration, 95) by bin(timestamp, 5m)'
          metricMeasureColumn: 'p95_ms'
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: gateP95Milliseconds
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: logActionGroups
    }
  }
}

output alertNames array = [
  deadLetters.name
  failedActions.name
  degradedGate.name
  heldCases.name
  gateLatency.name
]
