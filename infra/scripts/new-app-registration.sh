#!/bin/sh
# Create the OrgGuard app registration Easy Auth signs people in with: the app
# roles of infra/app-roles.json (OrgGuard.Reader, .Approver, .Admin), the
# Application ID URI api://<client id>, ID tokens for the page's sign-in, and a
# service principal so roles can be assigned. Prints the client id and, when
# azd is there, stores it as AZURE_AUTH_CLIENT_ID for `azd up`.
#
#   infra/scripts/new-app-registration.sh [display name]
#
# Needs a directory role that may create applications (Application Developer).
# The sign-in redirect URI is added after provisioning by postprovision.sh.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
name=${1:-OrgGuard}

client_id=$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg \
    --app-roles "@$here/../app-roles.json" --enable-id-token-issuance true \
    --query appId --output tsv)
az ad app update --id "$client_id" --identifier-uris "api://$client_id"
az ad sp create --id "$client_id" --output none
echo "app registration $name: client id $client_id"
if command -v azd >/dev/null 2>&1; then
    azd env set AZURE_AUTH_CLIENT_ID "$client_id"
fi
echo "assign people and groups to OrgGuard.Reader / .Approver / .Admin under Enterprise applications > $name"
