// OrgGuard's own Service Bus namespace: Entra tokens only (disableLocalAuth),
// reached by the app's managed identity (Data Receiver and Data Sender, rbac.bicep).
//
// * orgguard-work: the work a decision leaves, one session per mailbox
//   (requiresSession), so a mailbox's work is carried out in order and by one
//   consumer at a time. maxDeliveryCount is low: with sessions, a message that
//   keeps failing holds up its mailbox's next work until it is dead-lettered.
//   lockDuration 1 minute: a work message runs the outbox once (seconds), and
//   the host renews the lock while the function runs.
// * orgguard-rejected: a conveyor to the dead letters. The Functions trigger's
//   plain binding cannot dead-letter a message with a reason; OrgGuard sends a
//   copy here with the reason and at once dead-letters it from here
//   (shared/bus/servicebus.py). Nothing else reads it.
// * orgguard-decisions (with decisionEvents): a topic for other systems, one
//   CloudEvent per decision; they add their own subscriptions.
//
// Dataverse's own queue lives in a namespace of its own (dataverse-bus.bicep):
// Dataverse authenticates with SAS, which this namespace refuses.

param name string
param location string
param tags object = {}

param workQueueName string = 'orgguard-work'
param rejectedQueueName string = 'orgguard-rejected'
param decisionTopicName string = 'orgguard-decisions'

@description('Deploy the topic decision events are published on (ORGGUARD_DECISION_EVENTS).')
param decisionEvents bool = false

@allowed([
  'Standard'
  'Premium'
])
@description('Standard at least: sessions, scheduled messages and topics are not in Basic.')
param skuName string = 'Standard'

@minValue(1)
@maxValue(10)
@description('Deliveries of one work message before it is dead-lettered (shared/bootstrap.py WORK_MAX_DELIVERIES).')
param workMaxDeliveryCount int = 3

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuName
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource workQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: workQueueName
  properties: {
    requiresSession: true
    maxDeliveryCount: workMaxDeliveryCount
    lockDuration: 'PT1M'
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
    maxSizeInMegabytes: 1024
    enablePartitioning: false
  }
}

resource rejectedQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: rejectedQueueName
  properties: {
    requiresSession: false
    maxDeliveryCount: 1
    lockDuration: 'PT1M'
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
    maxSizeInMegabytes: 1024
    enablePartitioning: false
  }
}

resource decisionTopic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = if (decisionEvents) {
  parent: namespace
  name: decisionTopicName
  properties: {
    defaultMessageTimeToLive: 'P14D'
    maxSizeInMegabytes: 1024
    enablePartitioning: false
    supportOrdering: true
  }
}

output name string = namespace.name
output id string = namespace.id
output workQueueName string = workQueue.name
output rejectedQueueName string = rejectedQueue.name
output decisionTopicName string = decisionEvents ? decisionTopic.name : ''
// https://<name>.servicebus.windows.net:443/ -> <name>.servicebus.windows.net,
// taken from the endpoint so sovereign clouds get their own suffix.
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
