#!/bin/sh
# Subscribe the eventgrid_events function to the optional Event Grid topic
# (deployEventGrid=true). Run after `azd deploy`: Event Grid checks that the
# function exists when the subscription is created. Idempotent.
#
#   infra/scripts/subscribe-event-grid.sh <resource group>
set -eu
[ $# -eq 1 ] || { echo "usage: $0 <resource group>" >&2; exit 2; }
rg=$1
app=$(azd env get-value functionAppName)
topic=$(az eventgrid topic list -g "$rg" --query "[0].id" --output tsv)
[ -n "$topic" ] || { echo "$0: no Event Grid topic in $rg (deploy with deployEventGrid=true)" >&2; exit 1; }
function_id="$(az functionapp show -g "$rg" -n "$app" --query id --output tsv)/functions/eventgrid_events"

az eventgrid event-subscription create --name orgguard-functions --source-resource-id "$topic" \
    --endpoint-type azurefunction --endpoint "$function_id" \
    --event-delivery-schema cloudeventschemav1_0 \
    --max-delivery-attempts 30 --event-ttl 1440 --max-events-per-batch 1 --output none
echo "subscribed $app/eventgrid_events to $topic"
