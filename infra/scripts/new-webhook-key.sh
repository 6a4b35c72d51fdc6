#!/bin/sh
# Create or rotate the webhook key of one org: a new random key as a new
# version of the Key Vault secret orgguard-key-<org>. The key is never printed.
#
#   infra/scripts/new-webhook-key.sh <org> [--vault <key vault name>]
#
# The vault defaults to keyVaultName from the azd environment (azd env
# get-value keyVaultName). Writing needs Key Vault Secrets Officer on the vault
# (main.bicep grants it to principalId). Afterwards:
#   1. restart the app so its Key Vault reference ORGGUARD_KEY_<ORG> reads the
#      new version:  az functionapp restart -g <rg> -n <functionAppName>
#   2. give Dataverse the same key: orgguard register --org <org> --url https://<host>
#      with webhook_key: keyvault:https://<vault>.vault.azure.net/secrets/orgguard-key-<org>
#      in your local orgs.yaml.
# Exit 0 done, 1 failure (az), 2 bad usage.
set -eu

usage() {
    echo "usage: $0 <org> [--vault <key vault name>]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
org=$1
shift
vault=""
while [ $# -gt 0 ]; do
    case $1 in
        --vault)
            [ $# -ge 2 ] || usage
            vault=$2
            shift 2
            ;;
        *) usage ;;
    esac
done

# Org names become secret names (letters, digits, hyphens) and app setting names.
case $org in
    "" | -* | *[!a-z0-9-]*)
        echo "$0: org name '$org' must be lowercase letters, digits and hyphens" >&2
        exit 2
        ;;
esac

if [ -z "$vault" ]; then
    vault=$(azd env get-value keyVaultName 2>/dev/null) || vault=""
fi
if [ -z "$vault" ]; then
    echo "$0: no Key Vault: pass --vault <name> (the keyVaultName output of the deployment)" >&2
    exit 2
fi

# 48 hex characters (192 random bits): nothing that needs quoting in a
# Dataverse HttpHeader setting or a shell.
key=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
if [ ${#key} -ne 48 ]; then
    echo "$0: could not read random bytes" >&2
    exit 1
fi

if ! printf '%s' "$key" | az keyvault secret set --vault-name "$vault" --name "orgguard-key-$org" \
    --file /dev/stdin --encoding utf-8 --content-type "OrgGuard webhook key" --output none; then
    echo "$0: az keyvault secret set failed for orgguard-key-$org in $vault" >&2
    exit 1
fi
echo "stored a new version of orgguard-key-$org in $vault"
echo "next: restart the function app, then: orgguard register --org $org --url https://<functionAppHostName>"
