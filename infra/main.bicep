// OrgGuard on Azure: a Flex Consumption function app that guards which
// Dynamics 365 org owns a mailbox's ACT sync. Read top to bottom:
//   identity -> monitoring -> storage -> Service Bus (OrgGuard's, Dataverse's) -> Key Vault
//   -> role assignments -> function app -> alerts -> (optional) Event Grid topic.
// Deploy: `azd up` (azure.yaml, main.parameters.json), or
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.prod.bicepparam
// infra/README.md has the whole operations guide.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------- parameters

@minLength(1)
@maxLength(40)
@description('Environment name (dev, prod, ...); seeds resource names and tags. azd passes AZURE_ENV_NAME.')
param environmentName string

// Regions that offer Flex Consumption, from Microsoft's published list (the
// @allowed list of Azure-Samples/functions-quickstart-python-http-azd,
// infra/main.bicep, taken 2026-12-01; its canary region eastus2euap left out).
// `az functionapp list-flexconsumption-locations` gives today's list.
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
  }
})
@description('Azure region for every resource (one that offers Flex Consumption). azd passes AZURE_LOCATION.')
param location string

@description('Object id of the operator (azd passes the signed-in user as AZURE_PRINCIPAL_ID) or, in production, of an operators group: Storage Table Data Contributor (the CLI\'s direct mode) and Key Vault Secrets Officer (webhook keys). Empty: grant nothing.')
param principalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@minLength(36)
@maxLength(36)
@description('Application (client) id of the OrgGuard app registration (Easy Auth; app roles OrgGuard.Reader/Approver/Admin). infra/scripts/new-app-registration.sh creates one.')
param authClientId string

@description('Tenant of the app registration.')
param authTenantId string = subscription().tenantId


@allowed([
  'block'
  'allow'
])
@description('ORGGUARD_GATE_ON_ERROR: the gate\'s answer when it cannot decide.')
param gateOnError string = 'block'

@minValue(1)
@maxValue(54)
@description('ORGGUARD_GATE_DEADLINE_S: seconds the gate works to; well under Dataverse\'s 60-second webhook timeout.')
param gateDeadlineSeconds int = 10

@description('ORGGUARD_SWEEP_SCHEDULE: NCRONTAB schedule of the sweep timer.')
param sweepSchedule string = '0 0 */6 * * *'

@description('ORGGUARD_SWEEP_APPLY: whether the scheduled sweep repairs what it finds (false: it only reports).')
param sweepApply bool = false

@description('ORGGUARD_GRAPH_URL: Microsoft Graph for the user directory and notifications (the managed identity needs User.Read.All, GroupMember.Read.All and Mail.Send; see infra/README.md).')
param graphUrl string = 'https://graph.microsoft.com/v1.0'

@description('ORGGUARD_MAIL_FROM: the mailbox notifications are sent from (restrict Mail.Send to it); empty: nobody is mailed.')
param mailFrom string = ''

@description('ORGGUARD_PUBLIC_URL: the dashboard\'s address, for links in mail (e.g. a custom domain); empty: mail names the case only.')
param publicUrl string = ''


@minValue(1)
@maxValue(1000)
@description('Upper bound on Flex Consumption instances (caps cost and the load on Dataverse).')
param maximumInstanceCount int = 40

@minValue(0)
@maxValue(20)
@description('Always-ready instances for the HTTP functions, so the gate answers Dataverse without a cold start. Billed while idle: see infra/README.md.')
param alwaysReadyHttp int = 1

@description('Resource id of an action group the alerts notify. Empty: alerts fire in Azure Monitor without notifying anyone.')
param alertActionGroupId string = ''

@minValue(1)
@description('A held case waiting longer than this many hours raises an alert.')
param heldCaseAlertHours int = 24

@minValue(100)
@description('Gate p95 latency (ms) above which an alert fires.')
param gateP95AlertMilliseconds int = 2000

@description('Deploy the optional Event Grid custom topic for Dataverse (needs its access key; see app/eventgrid.bicep).')
param deployEventGrid bool = false

@description('Publish each decision as a CloudEvent on the orgguard-decisions topic (ORGGUARD_DECISION_EVENTS), for a SIEM or a ticketing system.')
param decisionEvents bool = false

param tags object = {}

// ------------------------------------------------------------------- naming

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var allTags = union(tags, {
  'azd-env-name': environmentName
  application: 'orgguard'
})
var functionAppName = 'func-orgguard-${resourceToken}'

// Registered orgs, [{name, id, url}], read from infra/orgs.json when the
// template is compiled. Names are lowercase letters, digits and hyphens; each
// org's webhook key is the Key Vault secret orgguard-key-<name>
// (infra/scripts/new-webhook-key.sh).
var orgs = loadJsonContent('orgs.json')

// ------------------------------------------------------------------ modules

module identity './app/identity.bicep' = {
  name: 'identity'
  params: {
    name: 'id-orgguard-${resourceToken}'
    location: location
    tags: allTags
  }
}

module monitoring './app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-orgguard-${resourceToken}'
    applicationInsightsName: 'appi-orgguard-${resourceToken}'
    location: location
    tags: allTags
  }
}

module storage './app/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: allTags
    deploymentContainerName: 'app-package-${resourceToken}'
  }
}

module serviceBus './app/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    name: 'sb-orgguard-${resourceToken}'
    location: location
    tags: allTags
    decisionEvents: decisionEvents
  }
}

// Dataverse's queue, in a namespace of its own with SAS on (see app/dataverse-bus.bicep for why).
module dataverseBus './app/dataverse-bus.bicep' = {
  name: 'dataverse-bus'
  params: {
    name: 'sb-orgguard-dv-${resourceToken}'
    location: location
    tags: allTags
    queueName: 'orgguard-events'
  }
}

module keyVault './app/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: allTags
  }
}

module rbac './rbac.bicep' = {
  name: 'rbac'
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    serviceBusNamespaceName: serviceBus.outputs.name
    dataverseNamespaceName: dataverseBus.outputs.name
    dataverseQueueName: dataverseBus.outputs.queueName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    operatorPrincipalId: principalId
    operatorPrincipalType: principalType
  }
}

// After rbac: the app's first start already needs its roles (host storage,
// Key Vault references for the webhook keys).
module functions './app/functions.bicep' = {
  name: 'functions'
  dependsOn: [
    rbac
  ]
  params: {
    name: functionAppName
    planName: 'plan-orgguard-${resourceToken}'
    location: location
    tags: allTags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    serviceBusFullyQualifiedNamespace: dataverseBus.outputs.fullyQualifiedNamespace
    serviceBusQueueName: dataverseBus.outputs.queueName
    busFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    workQueueName: serviceBus.outputs.workQueueName
    rejectedQueueName: serviceBus.outputs.rejectedQueueName
    decisionTopicName: serviceBus.outputs.decisionTopicName
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    keyVaultName: keyVault.outputs.name
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyHttp: alwaysReadyHttp
    orgs: orgs
    policyText: loadTextContent('policy.yaml')
    gateOnError: gateOnError
    gateDeadlineSeconds: gateDeadlineSeconds
    sweepSchedule: sweepSchedule
    sweepApply: sweepApply
    graphUrl: graphUrl
    mailFrom: mailFrom
    publicUrl: publicUrl
    authClientId: authClientId
    authTenantId: authTenantId
    allowEventGridDelivery: deployEventGrid
  }
}

module alerts './app/alerts.bicep' = {
  name: 'alerts'
  params: {
    namePrefix: 'orgguard-${resourceToken}'
    location: location
    tags: allTags
    actionGroupId: alertActionGroupId
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    serviceBusNamespaceId: dataverseBus.outputs.id
    serviceBusQueueName: dataverseBus.outputs.queueName
    busNamespaceId: serviceBus.outputs.id
    busQueueNames: [
      serviceBus.outputs.workQueueName
      serviceBus.outputs.rejectedQueueName
    ]
    heldCaseHours: heldCaseAlertHours
    gateP95Milliseconds: gateP95AlertMilliseconds
  }
}

module eventGrid './app/eventgrid.bicep' = if (deployEventGrid) {
  name: 'eventgrid'
  params: {
    name: 'evgt-orgguard-${resourceToken}'
    location: location
    tags: allTags
  }
}

// ------------------------------------------------------------------ outputs

// azd reads these into the environment (.azure/<env>/.env); the hooks and
// scripts use them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output functionAppName string = functions.outputs.name
output functionAppHostName string = functions.outputs.defaultHostName
output identityClientId string = identity.outputs.clientId
output storageAccountName string = storage.outputs.name
output serviceBusNamespaceFqdn string = serviceBus.outputs.fullyQualifiedNamespace
output dataverseNamespaceName string = dataverseBus.outputs.name
output dataverseNamespaceFqdn string = dataverseBus.outputs.fullyQualifiedNamespace
output dataverseQueueName string = dataverseBus.outputs.queueName
output dataverseSendRuleName string = dataverseBus.outputs.sendRuleName
output keyVaultName string = keyVault.outputs.name
output keyVaultUri string = keyVault.outputs.uri
output tableEndpoint string = storage.outputs.tableEndpoint
output eventGridTopicEndpoint string = deployEventGrid ? eventGrid.outputs.endpoint : ''
