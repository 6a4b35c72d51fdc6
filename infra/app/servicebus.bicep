// Service Bus namespace and the `orgguard-events` queue that carries Dataverse
// execution contexts to the Service Bus trigger.
//
// * Not session-enabled: Dataverse sets no SessionId, and a session-enabled
//   queue refuses messages without one.
// * maxDeliveryCount 5: a message the trigger keeps failing on goes to the
//   dead-letter queue after five attempts, where it stays visible.
// * disableLocalAuth: only Entra tokens are accepted (the app's managed
//   identity). Note for operators: Dataverse's own Service Bus service
//   endpoint authenticates with a SAS key, which this namespace refuses. With
//   these templates Dataverse reaches OrgGuard through the webhooks
//   (/api/dataverse/gate, /api/dataverse/events) and, if enabled, the Event
//   Grid topic; see infra/README.md before turning local auth back on.

param name string
param location string
param tags object = {}

@description('Queue the Service Bus trigger listens on.')
param queueName string = 'orgguard-events'

@allowed([
  'Basic'
  'Standard'
  'Premium'
])
param skuName string = 'Standard'

@minValue(1)
@maxValue(10)
param maxDeliveryCount int = 5

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

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: queueName
  properties: {
    requiresSession: false
    maxDeliveryCount: maxDeliveryCount
    deadLetteringOnMessageExpiration: true
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P14D'
    maxSizeInMegabytes: 1024
    enablePartitioning: false
  }
}

output name string = namespace.name
output id string = namespace.id
output queueName string = queue.name
output queueId string = queue.id
// https://<name>.servicebus.windows.net:443/ -> <name>.servicebus.windows.net,
// taken from the endpoint so sovereign clouds get their own suffix.
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
