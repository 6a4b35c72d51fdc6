// The namespace Dataverse sends its asynchronous messages to: one queue,
// orgguard-events, read by OrgGuard's Service Bus trigger.
//
// Why a namespace of its own, with local (SAS) authentication on: Dataverse's
// Service Bus service endpoints authenticate only with SAS (a key, a token or
// a connection string), and disableLocalAuth is a property of the whole
// namespace. Turned off on OrgGuard's own namespace, every SAS key there
// (including the RootManageSharedAccessKey every namespace has) would reach
// OrgGuard's work queue and decision topic too. Here SAS reaches only this
// queue, and the one rule Dataverse is given is scoped to it and can only send.
// OrgGuard itself still uses Entra tokens (its managed identity) here as well.
//
// * Not session-enabled: Dataverse sets no SessionId, and a session-enabled
//   queue refuses messages without one.
// * maxDeliveryCount 5: a message that keeps failing for a reason that may pass
//   (the ledger, a read-back) is tried five times, then dead-lettered. One that
//   can never be decided is dead-lettered at once, with its reason, by OrgGuard.

param name string
param location string
param tags object = {}

@description('Queue the Service Bus trigger listens on (ORGGUARD_QUEUE).')
param queueName string = 'orgguard-events'

@description('The SAS rule Dataverse sends with: scoped to the queue, Send only.')
param sendRuleName string = 'dataverse-send'

@allowed([
  'Basic'
  'Standard'
  'Premium'
])
param skuName string = 'Standard'

@minValue(1)
@maxValue(10)
@description('Deliveries before Service Bus dead-letters a message (shared/bootstrap.py DATAVERSE_MAX_DELIVERIES).')
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
    disableLocalAuth: false // Dataverse authenticates with SAS; see above
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

resource sendRule 'Microsoft.ServiceBus/namespaces/queues/authorizationRules@2024-01-01' = {
  parent: queue
  name: sendRuleName
  properties: {
    rights: [
      'Send'
    ]
  }
}

output name string = namespace.name
output id string = namespace.id
output queueName string = queue.name
output sendRuleName string = sendRule.name
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
