"""What the Bicep templates promise the ops team, checked by parsing them.

Bicep cannot be compiled here, so the templates are parsed twice: tree-sitter
for syntax (ERROR / MISSING nodes) and pycep-parser for structure (resources,
properties, parameters, variables as Python values). pycep keeps identifiers
as bare strings (``principalId``) and ``${...}`` interpolations as text, which
is what the assertions below compare against.

ORGGUARD_INFRA_DIR points the suite at another copy of infra/ (used to prove a
broken template fails it without touching the real one).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import tree_sitter
import tree_sitter_bicep
from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]
INFRA = Path(os.environ.get("ORGGUARD_INFRA_DIR", REPO / "infra")).resolve()
TEMPLATES = sorted(INFRA.rglob("*.bicep"))
PARAMETER_FILES = sorted(INFRA.glob("main.parameters.*.json"))

# Built-in role definition ids the function app's identity must hold.
REQUIRED_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0": "Azure Service Bus Data Receiver",
    "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
}

# Settings Flex Consumption rejects or ignores (the runtime lives in functionAppConfig).
FLEX_FORBIDDEN_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "AzureWebJobsStorage",  # the key-based connection string form
    "ServiceBusConnection",
}

SECRET_PATTERNS = re.compile(
    r"AccountKey=|SharedAccessKey|SharedAccessSignature|DefaultEndpointsProtocol=|Password=|\bsig=|\blist[A-Z]\w*\(",
)

_TS_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def _id(path: Path) -> str:
    return path.relative_to(INFRA).as_posix()


@cache
def template(relative: str) -> dict[str, Any]:
    result: Any = BicepParser().parse(file_path=INFRA / relative)  # a TypedDict; read as plain dicts
    return dict(result)


def resources_of_type(relative: str, resource_type: str) -> dict[str, dict[str, Any]]:
    found = {
        name: res
        for name, res in template(relative).get("resources", {}).items()
        if res["type"].lower() == resource_type.lower()
    }
    assert found, f"{relative} declares no {resource_type}"
    return found


def only_resource(relative: str, resource_type: str) -> dict[str, Any]:
    found = resources_of_type(relative, resource_type)
    assert len(found) == 1, f"{relative}: expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's object, looking through `if (...)` and `[for ...]` wrappers."""
    config: dict[str, Any] = resource["config"]
    while "config" in config and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


def dotted(expr: Any) -> str:
    """`a.b.c` for pycep's nested property accessors; other values as str."""
    if isinstance(expr, dict) and "operator" in expr and expr["operator"]["type"] == "property_accessor":
        ops = expr["operator"]["operands"]
        return f"{dotted(ops['operand_1'])}.{dotted(ops['operand_2'])}"
    return str(expr)


def module_params(name: str) -> dict[str, Any]:
    """The params main.bicep passes to one module (through an `if (...)` if there is one)."""
    modules = template("main.bicep")["modules"]
    assert name in modules, f"main.bicep has no module {name}"
    params: dict[str, Any] = body(modules[name]).get("params", {})
    return params


def param_default(relative: str, name: str) -> Any:
    params = template(relative)["parameters"]
    assert name in params, f"{relative} has no parameter {name}"
    return params[name]["default"]


def variable(relative: str, name: str) -> Any:
    variables = template(relative)["variables"]
    assert name in variables, f"{relative} has no variable {name}"
    return variables[name]["value"]


def code_without_comments(path: Path) -> str:
    """The template's text with every comment blanked out (prose may name what code must not use)."""
    source = bytearray(path.read_bytes())
    stack = [_TS_PARSER.parse(bytes(source)).root_node]
    comments = []
    while stack:
        node = stack.pop()
        if node.type == "comment":
            comments.append((node.start_byte, node.end_byte))
        stack.extend(node.children)
    for start, end in comments:
        source[start:end] = b" " * (end - start)
    return source.decode("utf-8")


def app_settings() -> dict[str, Any]:
    """functions.bicep's app settings by name: the literal list plus the Key Vault reference loop."""
    site = only_resource("app/functions.bicep", "Microsoft.Web/sites")
    combined = body(site)["properties"]["siteConfig"]["appSettings"]
    assert combined["function"]["type"] == "concat", "appSettings should be concat(base, key vault references)"
    settings: dict[str, Any] = {}
    for arg in combined["function"]["parameters"].values():
        value = variable("app/functions.bicep", arg)
        if isinstance(value, list):
            for entry in value:
                assert entry["name"] not in settings, f"app setting {entry['name']} is set twice"
                settings[entry["name"]] = entry["value"]
        else:  # the [for key in items(orgKeySecrets): ...] loop
            settings["<orgKeySecrets loop>"] = body({"config": value})["value"]
    return settings


# ----------------------------------------------------------------- syntax


def test_infra_has_the_expected_templates() -> None:
    names = {_id(p) for p in TEMPLATES}
    expected = {"main.bicep", "rbac.bicep"} | {
        f"app/{n}.bicep" for n in ("functions", "storage", "servicebus", "monitoring", "keyvault", "identity")
    }
    assert expected <= names, f"missing: {sorted(expected - names)}"


@pytest.mark.parametrize("path", TEMPLATES, ids=_id)
def test_template_has_no_syntax_errors(path: Path) -> None:
    source = path.read_bytes()
    problems = []
    stack = [_TS_PARSER.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            row, col = node.start_point
            problems.append(f"{_id(path)}:{row + 1}:{col + 1} {'MISSING' if node.is_missing else 'ERROR'} {node.type}")
        stack.extend(node.children)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", TEMPLATES, ids=_id)
def test_template_structure_is_readable(path: Path) -> None:
    parsed = template(_id(path))
    assert parsed.get("resources") or parsed.get("modules"), f"{_id(path)} declares nothing"


# ------------------------------------------------------- no keys anywhere


@pytest.mark.parametrize("path", TEMPLATES + PARAMETER_FILES, ids=_id)
def test_no_keys_or_key_based_connection_strings(path: Path) -> None:
    code = code_without_comments(path) if path.suffix == ".bicep" else path.read_text()
    hits = sorted({m.group(0) for m in SECRET_PATTERNS.finditer(code)})
    assert not hits, f"{_id(path)} uses key material or list*() functions: {hits}"


def test_only_the_event_grid_topic_allows_local_auth() -> None:
    """Every resource that can disable local (key) auth does, except the opt-in Dataverse Event Grid topic."""
    allowed = {("app/eventgrid.bicep", "Microsoft.EventGrid/topics")}
    checked = []
    for path in TEMPLATES:
        for res in template(_id(path)).get("resources", {}).values():
            props = body(res).get("properties", {})
            flags = {k: v for k, v in props.items() if k.lower() == "disablelocalauth"}
            flags.update({k: v for k, v in props.get("features", {}).items() if k.lower() == "disablelocalauth"})
            for value in flags.values():
                checked.append(res["type"])
                if (_id(path), res["type"]) not in allowed:
                    assert value is True, f"{_id(path)} {res['type']} enables local auth"
    assert {"Microsoft.ServiceBus/namespaces", "Microsoft.Insights/components"} <= set(checked)


# ------------------------------------------------------------------ storage


def test_storage_account_refuses_shared_keys_and_old_tls() -> None:
    props = body(only_resource("app/storage.bicep", "Microsoft.Storage/storageAccounts"))["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True


def test_storage_has_the_deployment_container_and_the_ledger_table_service() -> None:
    container = only_resource("app/storage.bicep", "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert body(container)["properties"]["publicAccess"] == "None"
    assert body(container)["name"] == "deploymentContainerName"
    only_resource("app/storage.bicep", "Microsoft.Storage/storageAccounts/tableServices")


# -------------------------------------------------------------- Service Bus


def test_service_bus_queue_takes_dataverse_messages() -> None:
    queue = body(only_resource("app/servicebus.bicep", "Microsoft.ServiceBus/namespaces/queues"))
    props = queue["properties"]
    assert props["requiresSession"] is False, "Dataverse sets no SessionId: a session queue refuses its messages"
    assert props["deadLetteringOnMessageExpiration"] is True
    assert props["maxDeliveryCount"] == "maxDeliveryCount"
    assert param_default("app/servicebus.bicep", "maxDeliveryCount") == 5
    assert queue["name"] == "queueName"
    assert param_default("app/servicebus.bicep", "queueName") == "orgguard-events"
    passed = module_params("serviceBus")
    assert passed.get("queueName", "orgguard-events") == "orgguard-events"


def test_service_bus_namespace_accepts_entra_tokens_only() -> None:
    props = body(only_resource("app/servicebus.bicep", "Microsoft.ServiceBus/namespaces"))["properties"]
    assert props["disableLocalAuth"] is True
    assert props["minimumTlsVersion"] == "1.2"


# ----------------------------------------------------- monitoring, key vault


def test_application_insights_and_log_analytics_disable_local_auth() -> None:
    appi = body(only_resource("app/monitoring.bicep", "Microsoft.Insights/components"))["properties"]
    assert appi["DisableLocalAuth"] is True
    assert dotted(appi["WorkspaceResourceId"]) == "logAnalytics.id"
    logs = body(only_resource("app/monitoring.bicep", "Microsoft.OperationalInsights/workspaces"))["properties"]
    assert logs["features"]["disableLocalAuth"] is True


def test_key_vault_uses_rbac_and_purge_protection() -> None:
    props = body(only_resource("app/keyvault.bicep", "Microsoft.KeyVault/vaults"))["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enablePurgeProtection"] is True
    assert props["enableSoftDelete"] is True
    assert "accessPolicies" not in props


# -------------------------------------------------------------------- RBAC


def test_every_required_role_is_assigned_to_the_managed_identity() -> None:
    assigned: dict[str, str] = {}
    for name, res in resources_of_type("rbac.bicep", "Microsoft.Authorization/roleAssignments").items():
        config = res["config"]
        props = body(res)["properties"]
        role_ref = props["roleDefinitionId"]["function"]
        assert role_ref["type"] == "subscription_resource_id"
        assert role_ref["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        if "loop_type" in config:
            role_ids = variable("rbac.bicep", config["loop_type"]["detail"]["array_name"])
            assert role_ref["parameters"]["resource_name_1"] == config["loop_type"]["detail"]["item_name"]
        else:
            role_ids = [variable("rbac.bicep", role_ref["parameters"]["resource_name_1"])]
        for role_id in role_ids:
            assigned[role_id] = f"{name} -> {props['principalId']} ({props['principalType']})"
            if props["principalId"] == "principalId":
                assert props["principalType"] == "ServicePrincipal", name
    to_identity = {r for r, how in assigned.items() if " -> principalId " in how}
    missing = {REQUIRED_ROLES[r] for r in REQUIRED_ROLES.keys() - to_identity}
    assert not missing, f"roles not assigned to the identity: {sorted(missing)}"
    rbac = module_params("rbac")
    assert dotted(rbac["principalId"]) == "identity.outputs.principalId"


@pytest.mark.parametrize("path", TEMPLATES, ids=_id)
def test_role_assignment_names_are_guids_of_scope_principal_and_role(path: Path) -> None:
    for name, res in template(_id(path)).get("resources", {}).items():
        if res["type"] != "Microsoft.Authorization/roleAssignments" or res["existing"]:
            continue
        config = body(res)
        guid = config["name"].get("function", {}) if isinstance(config["name"], dict) else {}
        assert guid.get("type") == "guid", f"{_id(path)} {name}: name must be guid(scope, principal, role)"
        args = [dotted(a) for a in guid["parameters"].values() if a is not None]
        assert args[0] == f"{config['scope']}.id", f"{name}: first guid() argument should be the scope's id"
        assert config["properties"]["principalId"] in args, f"{name}: guid() must include the principal"
        role = config["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        assert role in args, f"{name}: guid() must include the role"


# ------------------------------------------------------------ function app


def test_flex_consumption_plan_runs_python_311() -> None:
    plan = body(only_resource("app/functions.bicep", "Microsoft.Web/serverfarms"))
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True  # Linux
    site = body(only_resource("app/functions.bicep", "Microsoft.Web/sites"))
    assert site["kind"] == "functionapp,linux"
    assert dotted(site["properties"]["serverFarmId"]) == "plan.id"
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["scaleAndConcurrency"]["instanceMemoryMB"] == 2048
    assert config["scaleAndConcurrency"]["maximumInstanceCount"] == "maximumInstanceCount"
    main_params = module_params("functions")
    assert main_params["maximumInstanceCount"] == "maximumInstanceCount"


def test_deployment_package_is_read_with_the_managed_identity() -> None:
    site = body(only_resource("app/functions.bicep", "Microsoft.Web/sites"))
    storage = site["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {"type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId"}
    assert site["identity"]["type"] == "UserAssigned"
    assert site["properties"]["httpsOnly"] is True
    assert site["properties"]["keyVaultReferenceIdentity"] == "identityId"


def test_basic_publishing_credentials_are_disabled() -> None:
    policies = resources_of_type("app/functions.bicep", "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {body(p)["name"]: body(p)["properties"]["allow"] for p in policies.values()} == {"ftp": False, "scm": False}


def test_app_settings_use_identity_connections() -> None:
    settings = app_settings()
    for connection in ("AzureWebJobsStorage", "ServiceBusConnection"):
        assert settings[f"{connection}__credential"] == "managedidentity"
        assert settings[f"{connection}__clientId"] == "identityClientId"
    assert settings["AzureWebJobsStorage__accountName"] == "storageAccountName"
    assert settings["ServiceBusConnection__fullyQualifiedNamespace"] == "serviceBusFullyQualifiedNamespace"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    forbidden = FLEX_FORBIDDEN_SETTINGS & settings.keys()
    assert not forbidden, f"not for Flex Consumption / key-based: {sorted(forbidden)}"
    identity_outputs = module_params("functions")
    assert dotted(identity_outputs["identityClientId"]) == "identity.outputs.clientId"
    assert dotted(identity_outputs["identityId"]) == "identity.outputs.id"


def test_every_binding_expression_in_the_function_code_is_an_app_setting() -> None:
    """A trigger bound to %NAME% fails to index in Azure when NAME is not an app setting."""
    sources = [REPO / "function_app.py", *sorted((REPO / "functions").rglob("*.py"))]
    referenced = {
        name
        for src in sources
        if src.is_file()
        for name in re.findall(r"[\"']%([A-Za-z_][A-Za-z0-9_]*)%[\"']", src.read_text())
    }
    settings = app_settings()
    missing = referenced - settings.keys()
    assert not missing, f"function code binds %{sorted(missing)}% but functions.bicep does not set them"
    assert settings["ORGGUARD_QUEUE"] == "serviceBusQueueName"
    assert dotted(module_params("functions")["serviceBusQueueName"]) == "serviceBus.outputs.queueName"


def test_app_settings_configure_orgguard_for_azure() -> None:
    settings = app_settings()
    assert settings["ORGGUARD_AUTH"] == "easyauth"
    assert settings["ORGGUARD_LEDGER"] == "tables:${tableEndpoint}"
    assert variable("app/functions.bicep", "tableEndpoint").startswith("https://${storageAccountName}.table.")
    for name, param in {
        "ORGGUARD_ORGS": "orgsFile",
        "ORGGUARD_POLICY": "policyFile",
        "ORGGUARD_GATE_ON_ERROR": "gateOnError",
        "ORGGUARD_SWEEP_SCHEDULE": "sweepSchedule",
    }.items():
        assert settings[name] == param
    assert param_default("main.bicep", "sweepSchedule") == "0 0 */6 * * *"
    assert param_default("main.bicep", "gateOnError") == "block"
    deadline = settings["ORGGUARD_GATE_DEADLINE_S"]["function"]
    assert deadline["type"] == "string" and deadline["parameters"]["value_to_convert"] == "gateDeadlineSeconds"
    assert param_default("main.bicep", "gateDeadlineSeconds") == 10
    decorators = template("main.bicep")["parameters"]["gateDeadlineSeconds"]["decorators"]
    assert {"type": "max_value", "argument": 54} in decorators  # what Settings accepts: under 55 s


def test_app_settings_hold_no_secret_values() -> None:
    for name, value in app_settings().items():
        text = json.dumps(value)
        assert not SECRET_PATTERNS.search(text), f"{name} looks like key material"
        assert not re.search(r"[A-Za-z0-9+/]{40,}={0,2}", text), f"{name} holds a long literal that looks like a key"
        if re.search(r"KEY|SECRET|PASSWORD|TOKEN", name, re.IGNORECASE):
            assert isinstance(value, str) and value.startswith("@Microsoft.KeyVault("), (
                f"{name} must be a Key Vault ref"
            )
    # The per-org webhook keys arrive only as Key Vault references.
    loop = app_settings()["<orgKeySecrets loop>"]
    assert loop.startswith("@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=")
    # The one *_CONNECTION_STRING is Application Insights' (an identifier, local auth disabled), wired from its module.
    connection = dotted(module_params("functions")["applicationInsightsConnectionString"])
    assert connection == "monitoring.outputs.applicationInsightsConnectionString"


# --------------------------------------------------------------- Easy Auth


def test_easy_auth_guards_everything_but_the_dataverse_and_health_routes() -> None:
    auth = body(only_resource("app/functions.bicep", "Microsoft.Web/sites/config"))
    assert auth["name"] == "authsettingsV2"
    props = auth["properties"]
    assert props["platform"]["enabled"] is True
    validation = props["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    assert validation["excludedPaths"] == "excludedPaths"
    anonymous = variable("app/functions.bicep", "anonymousPaths")
    assert {"/api/dataverse/gate", "/api/dataverse/events", "/api/health"} <= set(anonymous)
    admin_routes = ("/api/cases", "/api/mailboxes", "/api/policy", "/api/sweeps", "/api/migrations", "/api/audit")
    for path in anonymous:
        assert "*" not in path and path.rstrip("/") not in ("", "/api"), f"{path} would open the admin API"
        assert not path.startswith(admin_routes), f"{path} is an admin route"
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "authClientId"
    assert "${authTenantId}" in aad["registration"]["openIdIssuer"]
    assert "clientSecretSettingName" not in aad["registration"], "no client secret: the API validates bearer tokens"


# ------------------------------------------------------ main and parameters


def test_every_module_referenced_by_main_exists_and_every_module_is_used() -> None:
    modules = template("main.bicep")["modules"]
    referenced = set()
    for name, module in modules.items():
        assert module["type"] == "local", f"{name}: modules should be local files"
        target = (INFRA / module["detail"]["path"]).resolve()
        assert target.is_file(), f"module {name} points at missing {module['detail']['path']}"
        referenced.add(target)
        declared = template(_id(target))["parameters"]
        passed = module_params(name)
        unknown = passed.keys() - declared.keys()
        assert not unknown, f"module {name} passes undeclared params {sorted(unknown)}"
        missing = {p for p, spec in declared.items() if spec["default"] is None} - passed.keys()
        assert not missing, f"module {name} leaves required params unset: {sorted(missing)}"
    orphans = {_id(p) for p in TEMPLATES} - {_id(p) for p in referenced} - {"main.bicep"}
    assert not orphans, f"templates main.bicep never deploys: {sorted(orphans)}"


def test_main_outputs_what_operators_need() -> None:
    outputs = template("main.bicep")["outputs"]
    expected = {
        "functionAppName": "functions.outputs.name",
        "functionAppHostName": "functions.outputs.defaultHostName",
        "identityClientId": "identity.outputs.clientId",
        "storageAccountName": "storage.outputs.name",
        "serviceBusNamespaceFqdn": "serviceBus.outputs.fullyQualifiedNamespace",
        "keyVaultUri": "keyVault.outputs.uri",
    }
    assert {name: dotted(outputs[name]["value"]) for name in expected if name in outputs} == expected


def test_event_grid_is_opt_in() -> None:
    module = template("main.bicep")["modules"]["eventGrid"]
    assert module["config"]["condition"] == "deployEventGrid"
    assert param_default("main.bicep", "deployEventGrid") is False


def test_there_is_a_parameters_file_per_environment() -> None:
    assert {p.name for p in PARAMETER_FILES} >= {"main.parameters.dev.json", "main.parameters.prod.json"}


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=_id)
def test_parameters_file_covers_every_required_parameter(path: Path) -> None:
    declared = template("main.bicep")["parameters"]
    given = json.loads(path.read_text())["parameters"]
    required = {name for name, spec in declared.items() if spec["default"] is None}
    assert required <= given.keys(), f"{path.name} misses {sorted(required - given.keys())}"
    assert given.keys() <= declared.keys(), f"{path.name} sets undeclared {sorted(given.keys() - declared.keys())}"
    for name, entry in given.items():
        assert set(entry) == {"value"}, f"{path.name}: {name} must be a plain value (no Key Vault reference needed)"
        allowed = [d["argument"] for d in declared[name]["decorators"] if d["type"] == "allowed"]
        if allowed:
            assert entry["value"] in allowed[0], f"{path.name}: {name}={entry['value']!r} not in {allowed[0]}"


# ---------------------------------------------------------------- check.py


def test_check_script_lists_every_resource_and_passes() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "infra" / "check.py"), str(INFRA)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    for path in TEMPLATES:
        for res in template(_id(path)).get("resources", {}).values():
            assert res["type"] in run.stdout and res["api_version"] in run.stdout


def test_check_script_fails_on_a_syntax_error(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "main.bicep").write_text("module m './app/x.bicep' = {\n  name: 'm'\n}\n")
    (tmp_path / "app" / "x.bicep").write_text(
        "resource s 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n"
    )
    run = subprocess.run(
        [sys.executable, str(REPO / "infra" / "check.py"), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    assert "app/x.bicep:" in run.stderr and "syntax error" in run.stderr
