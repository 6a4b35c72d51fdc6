// Optional: an Event Grid custom topic Dataverse can publish to (service
// endpoint contract 9, "Event Grid"). Deployed only when main.bicep's
// deployEventGrid is true.
//
// Why a custom topic: Event Grid system topics exist only for Azure resource
// providers; Dataverse is not one, so it publishes to a custom topic whose
// endpoint and access key are entered on its service endpoint.
//
// Why disableLocalAuth is false here (and only here): Dataverse's Event Grid
// service endpoint authenticates with the topic's access key (SAS); it cannot
// obtain an Entra token for the topic. With local auth disabled it could not
// publish at all. The key grants publishing to this one topic and nothing
// else; the template never reads it (no listKeys) -- the operator copies it
// into the service endpoint once (`az eventgrid topic key list`). If you do
// not need the Event Grid channel, leave the module off: the webhooks cover
// the same events with a per-org key the app checks itself.

param name string
param location string
param tags object = {}

@description('Schema Dataverse publishes in; the subscription delivers in the same one.')
@allowed([
  'CloudEventSchemaV1_0'
  'EventGridSchema'
])
param inputSchema string = 'CloudEventSchemaV1_0'

@description('Resource id of the function app that receives the events.')
param functionAppId string

@description('Name of the Event Grid-triggered function. Empty: create the topic only (the function must exist before a subscription can point at it, so deploy the code first, then redeploy with the name).')
param functionName string = ''

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    inputSchema: inputSchema
    publicNetworkAccess: 'Enabled'
    disableLocalAuth: false
  }
}

resource toFunction 'Microsoft.EventGrid/topics/eventSubscriptions@2022-06-15' = if (!empty(functionName)) {
  parent: topic
  name: 'orgguard-functions'
  properties: {
    eventDeliverySchema: inputSchema
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output name string = topic.name
output endpoint string = topic.properties.endpoint
