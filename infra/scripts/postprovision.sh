#!/bin/sh
# azd postprovision hook: let the page's sign-in come back to this app, and
# say what is left to do. azd exports the deployment outputs as variables.
set -eu
host=${functionAppHostName:?functionAppHostName output missing}
callback="https://$host/.auth/login/aad/callback"

existing=$(az ad app show --id "$AZURE_AUTH_CLIENT_ID" --query "web.redirectUris" --output tsv 2>/dev/null || true)
case "$existing" in
    *"$callback"*) ;;
    *)
        # shellcheck disable=SC2086 # one URI per word, as az expects
        if ! az ad app update --id "$AZURE_AUTH_CLIENT_ID" --web-redirect-uris $existing "$callback"; then
            echo "could not add $callback to the app registration: add it by hand (Authentication > Web)" >&2
        fi
        ;;
esac

echo "OrgGuard is at https://$host (page: sign in; API: /api; health: /api/health)"
echo "next steps (infra/README.md, Operations guide):"
echo "  webhook keys:  infra/scripts/new-webhook-key.sh <org>   (for each org in infra/orgs.json)"
echo "  Dataverse:     application user + security role in each org, then orgguard register"
