// Production parameters, for a deployment without azd:
//   az deployment group create -g rg-orgguard-prod -f infra/main.bicep -p infra/main.prod.bicepparam
// The values that differ per tenant come from the environment, so this file
// is not edited per deployment.
using './main.bicep'

param environmentName = 'orgguard-prod'
param location = readEnvironmentVariable('AZURE_LOCATION', 'westeurope')

// An operators group rather than one person: table data (CLI direct mode)
// and Key Vault Secrets Officer (webhook keys).
param principalId = readEnvironmentVariable('ORGGUARD_OPERATORS_GROUP_ID', '')
param principalType = 'Group'

param authClientId = readEnvironmentVariable('AZURE_AUTH_CLIENT_ID')
param alertActionGroupId = readEnvironmentVariable('ORGGUARD_ALERT_ACTION_GROUP_ID', '')

param maximumInstanceCount = 40
param alwaysReadyHttp = 1
param gateOnError = 'block'
param sweepApply = false
param heldCaseAlertHours = 24
param gateP95AlertMilliseconds = 2000
