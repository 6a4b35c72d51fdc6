// Role assignments for the function app's user-assigned managed identity:
// least privilege, each scoped to the one resource it is for. Names are
// guid(scope, principal, role) so a redeploy finds the same assignment
// instead of failing with RoleAssignmentExists.

@description('Principal (object) id of the user-assigned managed identity.')
param principalId string

param storageAccountName string
@description('OrgGuard\'s own namespace: the work queue, the rejections queue, the decision topic.')
param serviceBusNamespaceName string
@description('Dataverse\'s namespace and queue: the trigger receives from it, a replay sends to it.')
param dataverseNamespaceName string
param dataverseQueueName string
param applicationInsightsName string
param keyVaultName string

@description('Optional: the operator (a user, or better a group) who runs the CLI against the ledger and writes webhook keys. Empty: none.')
param operatorPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

// Host storage (blobs for leases and the deployment package, queues for the
// host's internal work) and the ledger (tables).
var storageRoleIds = [
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
]

// Receive (the triggers, dead letters) and send (work, decision events, replays):
// on OrgGuard's whole namespace, and on Dataverse's one queue.
var serviceBusRoleIds = [
  '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0' // Azure Service Bus Data Receiver
  '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39' // Azure Service Bus Data Sender
]

var monitoringRoleIds = [
  '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
]

var keyVaultRoleIds = [
  '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User
]

// The operator: `orgguard` in direct mode reads and writes the ledger's
// tables (ORGGUARD_LEDGER=tables:https://...), and
// infra/scripts/new-webhook-key.sh writes the webhook-key secrets.
var operatorTableRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
var operatorSecretsRoleId = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7' // Key Vault Secrets Officer

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource dataverseBus 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: dataverseNamespaceName
}

resource dataverseQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: dataverseBus
  name: dataverseQueueName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2024-11-01' existing = {
  name: keyVaultName
}

resource storageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in storageRoleIds: {
  name: guid(storage.id, principalId, roleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource serviceBusRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in serviceBusRoleIds: {
  name: guid(serviceBus.id, principalId, roleId)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource dataverseQueueRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in serviceBusRoleIds: {
  name: guid(dataverseQueue.id, principalId, roleId)
  scope: dataverseQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource monitoringRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in monitoringRoleIds: {
  name: guid(applicationInsights.id, principalId, roleId)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource keyVaultRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in keyVaultRoleIds: {
  name: guid(vault.id, principalId, roleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource operatorTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(storage.id, operatorPrincipalId, operatorTableRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', operatorTableRoleId)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

resource operatorSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(vault.id, operatorPrincipalId, operatorSecretsRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', operatorSecretsRoleId)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}
