// OrgGuard on Azure: a Flex Consumption function app that guards which
// Dynamics 365 org owns a mailbox's ACT sync. Read top to bottom:
//   identity -> monitoring -> storage -> Service Bus -> Key Vault
//   -> role assignments -> function app -> (optional) Event Grid topic.
// Deploy: az deployment group create -g <rg> -f infra/main.bicep \
//           -p @infra/main.parameters.<env>.json -p authClientId=<app id>

targetScope = 'resourceGroup'

// ---------------------------------------------------------------- parameters

@minLength(1)
@maxLength(40)
@description('Environment name (dev, prod, ...); seeds resource names and tags.')
param environmentName string

@description('Azure region for every resource.')
param location string = resourceGroup().location

@minValue(1)
@maxValue(1000)
@description('Upper bound on Flex Consumption instances (caps cost and the load on Dataverse).')
param maximumInstanceCount int = 40

@description('Application (client) id of the OrgGuard API app registration (Easy Auth audience; app roles OrgGuard.Reader/Approver/Admin).')
param authClientId string

@description('Tenant of the app registration.')
param authTenantId string = subscription().tenantId

@description('ORGGUARD_ORGS: registered orgs file, relative to the deployed package.')
param orgsFile string = 'orgs.yaml'

@description('ORGGUARD_POLICY: the policy file the ledger starts from.')
param policyFile string = 'policy.yaml'

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

@description('Webhook keys as Key Vault references: app setting name -> secret name, e.g. {"ORGGUARD_KEY_CONTOSO_NA": "orgguard-key-contoso-na"}.')
param orgKeySecrets object = {}

@description('Object id of an operator or group that may write the webhook-key secrets. Empty: grant it yourself.')
param secretsOfficerPrincipalId string = ''

@description('Deploy the optional Event Grid custom topic for Dataverse (needs its access key; see app/eventgrid.bicep).')
param deployEventGrid bool = false

@description('Event Grid-triggered function to subscribe the topic to (eventgrid_events); empty until the code is deployed.')
param eventGridFunctionName string = ''

param tags object = {}

// ------------------------------------------------------------------- naming

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var allTags = union(tags, {
  'azd-env-name': environmentName
  application: 'orgguard'
})
var functionAppName = 'func-orgguard-${resourceToken}'

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
    serviceBusQueueName: serviceBus.outputs.queueName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    secretsOfficerPrincipalId: secretsOfficerPrincipalId
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
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    serviceBusQueueName: serviceBus.outputs.queueName
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    keyVaultName: keyVault.outputs.name
    maximumInstanceCount: maximumInstanceCount
    orgsFile: orgsFile
    policyFile: policyFile
    gateOnError: gateOnError
    gateDeadlineSeconds: gateDeadlineSeconds
    sweepSchedule: sweepSchedule
    orgKeySecrets: orgKeySecrets
    authClientId: authClientId
    authTenantId: authTenantId
    allowEventGridDelivery: deployEventGrid
  }
}

module eventGrid './app/eventgrid.bicep' = if (deployEventGrid) {
  name: 'eventgrid'
  params: {
    name: 'evgt-orgguard-${resourceToken}'
    location: location
    tags: allTags
    functionAppId: functions.outputs.id
    functionName: eventGridFunctionName
  }
}

// ------------------------------------------------------------------ outputs

output functionAppName string = functions.outputs.name
output functionAppHostName string = functions.outputs.defaultHostName
output identityClientId string = identity.outputs.clientId
output storageAccountName string = storage.outputs.name
output serviceBusNamespaceFqdn string = serviceBus.outputs.fullyQualifiedNamespace
output keyVaultUri string = keyVault.outputs.uri
output eventGridTopicEndpoint string = deployEventGrid ? eventGrid.outputs.endpoint : ''
