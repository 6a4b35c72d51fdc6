// The OrgGuard function app on a Flex Consumption (FC1) plan, Python 3.11
// (azure-functions 1.26 is the last line for 3.11/3.12; the project, its lint
// target and its tests run on 3.11, so Azure runs what was tested).
//
// Every connection is identity-based: the host's storage, the Service Bus
// trigger, Application Insights ingestion and the deployment package all use
// the user-assigned identity. There is no connection string with a key and no
// listKeys() anywhere. Flex Consumption takes the runtime from
// functionAppConfig, so FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION,
// WEBSITE_RUN_FROM_PACKAGE and the WEBSITE_CONTENT* settings must not be set.

param name string
param planName string
param location string
param tags object = {}

@description('Resource id, client id of the user-assigned identity the app runs as.')
param identityId string
param identityClientId string

param storageAccountName string
param storageBlobEndpoint string
param deploymentContainerName string

@description('Dataverse\'s namespace (the servicebus_events trigger\'s connection, ServiceBusConnection).')
param serviceBusFullyQualifiedNamespace string
@description('Queue the Service Bus trigger reads (bound in code as %ORGGUARD_QUEUE%).')
param serviceBusQueueName string
@description('OrgGuard\'s own namespace (the work trigger\'s connection, OrgGuardBus).')
param busFullyQualifiedNamespace string
@description('The work queue, one session per mailbox (bound in code as %ORGGUARD_WORK_QUEUE%).')
param workQueueName string
param rejectedQueueName string
@description('The decision events topic; empty: decision events off.')
param decisionTopicName string = ''
param applicationInsightsConnectionString string
param keyVaultName string

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@minValue(0)
@maxValue(20)
@description('Always-ready instances for the HTTP functions (the gate Dataverse waits on). 0 turns them off.')
param alwaysReadyHttp int

// OrgGuard settings (shared/settings.py reads the same names).
@description('Registered orgs: [{name, id, url}]. Each org\'s webhook key is the Key Vault secret orgguard-key-<name>.')
param orgs array
@description('The first policy (YAML text); the ledger starts from it once, later versions come through PUT /api/policy.')
param policyText string
@allowed([
  'block'
  'allow'
])
param gateOnError string
@minValue(1)
@maxValue(54)
param gateDeadlineSeconds int
param sweepSchedule string
param sweepApply bool
@description('Microsoft Graph base the user directory and sendMail use (no trailing slash).')
param graphUrl string
@description('The mailbox OrgGuard sends notifications from; empty: nobody is mailed.')
param mailFrom string
@description('The dashboard\'s public address, for links to cases in mail; empty: mail names the case only.')
param publicUrl string
@description('The Dataverse Global Discovery Service (GET /api/discovery); another cloud has its own address.')
param discoveryUrl string = 'https://globaldisco.crm.dynamics.com'

// App Service Authentication (Easy Auth) with Microsoft Entra ID.
@description('Application (client) id of the OrgGuard API app registration.')
param authClientId string
param authTenantId string

@description('True when the Event Grid topic delivers to this app: its runtime webhook must pass Easy Auth (it carries the system key instead).')
param allowEventGridDelivery bool = false

// Dataverse calls /api/dataverse/* with its per-org `x-orgguard-key` header,
// not an Entra token; health and the OpenAPI schema are public per
// CONTRACT.md. Every other path needs a signed-in user (the page redirects to
// sign-in) or a bearer token for the app registration.
var anonymousPaths = [
  '/api/dataverse/*'
  '/api/health'
  '/api/openapi.json'
]
var excludedPaths = allowEventGridDelivery ? concat(anonymousPaths, ['/runtime/webhooks/eventgrid']) : anonymousPaths

var tableEndpoint = 'https://${storageAccountName}.table.${environment().suffixes.storage}'

var baseAppSettings = [
  // Functions host storage, through the managed identity.
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  // Service Bus trigger connection ("ServiceBusConnection" in function code).
  {
    name: 'ServiceBusConnection__fullyQualifiedNamespace'
    value: serviceBusFullyQualifiedNamespace
  }
  {
    name: 'ServiceBusConnection__credential'
    value: 'managedidentity'
  }
  {
    name: 'ServiceBusConnection__clientId'
    value: identityClientId
  }
  {
    name: 'ORGGUARD_QUEUE'
    value: serviceBusQueueName
  }
  // OrgGuard's own namespace: the work trigger's connection ("OrgGuardBus") and the SDK's
  // (shared/bus/servicebus.py), both through the managed identity.
  {
    name: 'OrgGuardBus__fullyQualifiedNamespace'
    value: busFullyQualifiedNamespace
  }
  {
    name: 'OrgGuardBus__credential'
    value: 'managedidentity'
  }
  {
    name: 'OrgGuardBus__clientId'
    value: identityClientId
  }
  {
    name: 'ORGGUARD_BUS'
    value: 'servicebus'
  }
  {
    name: 'ORGGUARD_WORK_QUEUE'
    value: workQueueName
  }
  {
    name: 'ORGGUARD_REJECTED_QUEUE'
    value: rejectedQueueName
  }
  {
    name: 'ORGGUARD_DECISION_EVENTS'
    value: empty(decisionTopicName) ? 'off' : 'servicebus:${decisionTopicName}'
  }
  // Telemetry: where to send (an identifier, not a credential) and how to
  // authenticate (Entra, as the identity) since local auth is disabled.
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: applicationInsightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
  // azure-identity picks the user-assigned identity from this.
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  // OrgGuard.
  {
    name: 'ORGGUARD_LEDGER'
    value: 'tables:${tableEndpoint}'
  }
  // The documents themselves, not file names: the deployed package carries
  // neither orgs.yaml nor policy.yaml (shared/settings.py inline_document).
  {
    name: 'ORGGUARD_ORGS'
    value: string(orgsDocument)
  }
  {
    name: 'ORGGUARD_POLICY'
    value: policyText
  }
  {
    name: 'ORGGUARD_GATE_ON_ERROR'
    value: gateOnError
  }
  {
    name: 'ORGGUARD_GATE_DEADLINE_S'
    value: string(gateDeadlineSeconds)
  }
  {
    name: 'ORGGUARD_SWEEP_SCHEDULE'
    value: sweepSchedule
  }
  {
    name: 'ORGGUARD_SWEEP_APPLY'
    value: sweepApply ? 'true' : 'false'
  }
  {
    name: 'ORGGUARD_AUTH'
    value: 'easyauth'
  }
  // Microsoft Graph: users for user.* conditions, sendMail for notices (app permissions in infra/README.md).
  {
    name: 'ORGGUARD_GRAPH_URL'
    value: graphUrl
  }
  {
    name: 'ORGGUARD_GRAPH_TIMEOUT_S'
    value: '3' // how long a decision waits for Graph before it goes on without the user
  }
  {
    name: 'ORGGUARD_MAIL_FROM'
    value: mailFrom
  }
  {
    name: 'ORGGUARD_PUBLIC_URL'
    value: publicUrl
  }
  {
    name: 'ORGGUARD_DISCOVERY_URL'
    value: discoveryUrl
  }
]

// Each org names its key as env:ORGGUARD_KEY_<NAME>; that app setting is a
// Key Vault reference to the secret orgguard-key-<name>, which
// infra/scripts/new-webhook-key.sh creates. The platform resolves it with
// keyVaultReferenceIdentity: the app sees the value, the template never does.
var orgsDocument = {
  orgs: [for org in orgs: {
    name: org.name
    id: org.id
    url: org.url
    webhook_key: 'env:ORGGUARD_KEY_${toUpper(replace(org.name, '-', '_'))}'
    // production, sandbox, trial, ... (orgguard discover tells each environment's); policy conditions read it
    type: contains(org, 'type') ? org.type : null
  }]
}

var orgKeyAppSettings = [for org in orgs: {
  name: 'ORGGUARD_KEY_${toUpper(replace(org.name, '-', '_'))}'
  value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=orgguard-key-${org.name})'
}]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: concat(baseAppSettings, orgKeyAppSettings)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        // "http" is the group of every HTTP function (here the one ASGI app:
        // gate, events, admin API, page). See infra/README.md for the cost.
        alwaysReady: [
          {
            name: 'http'
            instanceCount: alwaysReadyHttp
          }
        ]
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No basic (username/password) publishing credentials: deployments go
// through Entra (az/azd/func with the operator's login).
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      // A browser on the page is sent to sign in; the app itself answers
      // /api/me (see the page's work) and reads X-MS-CLIENT-PRINCIPAL.
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: excludedPaths
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${authTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

output name string = functionApp.name
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
