// Optional: an Event Grid custom topic Dataverse can publish to (service
// endpoint contract 9, "Event Grid"). Deployed only when main.bicep's
// deployEventGrid is true.
//
// Why a custom topic: Event Grid system topics exist only for Azure resource
// providers; Dataverse is not one, so it publishes to a custom topic whose
// endpoint and access key are entered on its service endpoint.
//
// The subscription that delivers to the eventgrid_events function is made by
// infra/scripts/subscribe-event-grid.sh after the code is deployed: Event
// Grid validates the function when the subscription is created, so it cannot
// be part of the same deployment that creates the app.
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

output name string = topic.name
output endpoint string = topic.properties.endpoint
