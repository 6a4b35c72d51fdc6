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
PARAMETER_FILES = sorted(INFRA.glob("main.parameters*.json"))
BICEPPARAM_FILES = sorted(INFRA.glob("*.bicepparam"))

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
        else:  # the [for org in orgs: ...] loop
            settings[f"<{arg} loop>"] = body({"config": value})["value"]
    return settings


# ----------------------------------------------------------------- syntax


def test_infra_has_the_expected_templates() -> None:
    names = {_id(p) for p in TEMPLATES}
    expected = {"main.bicep", "rbac.bicep"} | {
        f"app/{n}.bicep"
        for n in ("functions", "storage", "servicebus", "dataverse-bus", "monitoring", "keyvault", "identity", "alerts")
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


def test_only_dataverses_ways_in_allow_local_auth() -> None:
    """Every resource that can disable local (key) auth does, except where Dataverse authenticates with a key:
    the opt-in Event Grid topic, and the namespace of Dataverse's Service Bus queue (SAS)."""
    allowed = {
        ("app/eventgrid.bicep", "Microsoft.EventGrid/topics"),
        ("app/dataverse-bus.bicep", "Microsoft.ServiceBus/namespaces"),
    }
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


def queue_named(relative: str, symbol: str) -> dict[str, Any]:
    queues = resources_of_type(relative, "Microsoft.ServiceBus/namespaces/queues")
    assert symbol in queues, f"{relative} has no queue {symbol}"
    return body(queues[symbol])


def test_dataverses_queue_takes_its_messages_without_sessions() -> None:
    from shared.bootstrap import DATAVERSE_MAX_DELIVERIES

    queue = body(only_resource("app/dataverse-bus.bicep", "Microsoft.ServiceBus/namespaces/queues"))
    props = queue["properties"]
    assert props["requiresSession"] is False, "Dataverse sets no SessionId: a session queue refuses its messages"
    assert props["deadLetteringOnMessageExpiration"] is True
    assert props["maxDeliveryCount"] == "maxDeliveryCount"
    assert param_default("app/dataverse-bus.bicep", "maxDeliveryCount") == DATAVERSE_MAX_DELIVERIES
    assert queue["name"] == "queueName"
    assert param_default("app/dataverse-bus.bicep", "queueName") == "orgguard-events"
    assert module_params("dataverseBus").get("queueName", "orgguard-events") == "orgguard-events"


def test_dataverse_sends_with_a_sas_rule_scoped_to_its_queue_that_can_only_send() -> None:
    rules = [
        (relative, res)
        for relative in (_id(p) for p in TEMPLATES)
        for res in template(relative).get("resources", {}).values()
        if "authorizationrules" in res["type"].lower()
    ]
    assert len(rules) == 1, "one SAS rule in all the templates: Dataverse's"
    relative, rule = rules[0]
    assert relative == "app/dataverse-bus.bicep"
    assert rule["type"] == "Microsoft.ServiceBus/namespaces/queues/authorizationRules"
    config = body(rule)
    assert config["parent"] == "queue" and config["properties"]["rights"] == ["Send"]
    props = body(only_resource("app/dataverse-bus.bicep", "Microsoft.ServiceBus/namespaces"))["properties"]
    assert props["disableLocalAuth"] is False and props["minimumTlsVersion"] == "1.2"


def test_orgguards_work_queue_has_a_session_per_mailbox_and_few_deliveries() -> None:
    from shared.bootstrap import WORK_MAX_DELIVERIES

    work = queue_named("app/servicebus.bicep", "workQueue")["properties"]
    assert work["requiresSession"] is True
    assert work["maxDeliveryCount"] == "workMaxDeliveryCount"
    assert param_default("app/servicebus.bicep", "workMaxDeliveryCount") == WORK_MAX_DELIVERIES
    assert work["lockDuration"] == "PT1M" and work["deadLetteringOnMessageExpiration"] is True
    rejected = queue_named("app/servicebus.bicep", "rejectedQueue")["properties"]
    assert rejected["requiresSession"] is False and rejected["maxDeliveryCount"] == 1
    assert param_default("app/servicebus.bicep", "workQueueName") == "orgguard-work"
    assert param_default("app/servicebus.bicep", "rejectedQueueName") == "orgguard-rejected"
    from shared.config.settings import Settings

    assert (Settings().work_queue, Settings().rejected_queue) == ("orgguard-work", "orgguard-rejected")


def test_the_decision_topic_is_there_only_when_decision_events_are_on() -> None:
    topic = only_resource("app/servicebus.bicep", "Microsoft.ServiceBus/namespaces/topics")
    assert topic["config"]["condition"] == "decisionEvents"
    assert param_default("app/servicebus.bicep", "decisionEvents") is False
    assert param_default("main.bicep", "decisionEvents") is False
    assert module_params("serviceBus")["decisionEvents"] == "decisionEvents"


def test_service_bus_namespace_accepts_entra_tokens_only() -> None:
    props = body(only_resource("app/servicebus.bicep", "Microsoft.ServiceBus/namespaces"))["properties"]
    assert props["disableLocalAuth"] is True
    assert props["minimumTlsVersion"] == "1.2"


def test_the_identity_receives_and_sends_on_orgguards_namespace_and_dataverses_queue_alone() -> None:
    scopes = {
        body(res)["scope"]
        for name, res in template("rbac.bicep")["resources"].items()
        if name in ("serviceBusRoles", "dataverseQueueRoles")
    }
    assert scopes == {"serviceBus", "dataverseQueue"}
    rbac = module_params("rbac")
    assert dotted(rbac["serviceBusNamespaceName"]) == "serviceBus.outputs.name"
    assert dotted(rbac["dataverseQueueName"]) == "dataverseBus.outputs.queueName"


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


def role_assignments() -> list[tuple[str, str, str, str]]:
    """(symbol, role id, principal expression, principal type) of every role assignment in rbac.bicep."""
    found = []
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
        found += [(name, role_id, props["principalId"], props["principalType"]) for role_id in role_ids]
    return found


def test_every_required_role_is_assigned_to_the_managed_identity() -> None:
    assignments = role_assignments()
    to_identity = {role for _, role, principal, _ in assignments if principal == "principalId"}
    assert all(kind == "ServicePrincipal" for _, _, principal, kind in assignments if principal == "principalId")
    missing = {REQUIRED_ROLES[r] for r in REQUIRED_ROLES.keys() - to_identity}
    assert not missing, f"roles not assigned to the identity: {sorted(missing)}"
    rbac = module_params("rbac")
    assert dotted(rbac["principalId"]) == "identity.outputs.principalId"


def test_the_operator_gets_table_data_and_key_vault_secrets_only_when_named() -> None:
    """azd's signed-in user (AZURE_PRINCIPAL_ID) runs the CLI's direct mode and writes webhook keys."""
    operator = {(role, kind) for _, role, principal, kind in role_assignments() if principal == "operatorPrincipalId"}
    assert {role for role, _ in operator} == {
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",  # Storage Table Data Contributor
        "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",  # Key Vault Secrets Officer
    }
    assert {kind for _, kind in operator} == {"operatorPrincipalType"}
    for name in ("operatorTables", "operatorSecrets"):
        assert template("rbac.bicep")["resources"][name]["config"]["condition"], f"{name} must be optional"
    rbac = module_params("rbac")
    assert rbac["operatorPrincipalId"] == "principalId"
    assert rbac["operatorPrincipalType"] == "principalType"
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


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


def test_flex_consumption_plan_runs_python_311_with_always_ready_http_instances() -> None:
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
    assert config["scaleAndConcurrency"]["alwaysReady"] == [{"name": "http", "instanceCount": "alwaysReadyHttp"}]
    main_params = module_params("functions")
    assert main_params["maximumInstanceCount"] == "maximumInstanceCount"
    assert main_params["alwaysReadyHttp"] == "alwaysReadyHttp"
    assert param_default("main.bicep", "alwaysReadyHttp") == 1


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
    assert dotted(module_params("functions")["serviceBusQueueName"]) == "dataverseBus.outputs.queueName"
    assert settings["ORGGUARD_WORK_QUEUE"] == "workQueueName"
    assert dotted(module_params("functions")["workQueueName"]) == "serviceBus.outputs.workQueueName"


def test_the_work_trigger_and_the_sdk_reach_orgguards_namespace_through_the_identity() -> None:
    settings = app_settings()
    assert settings["OrgGuardBus__fullyQualifiedNamespace"] == "busFullyQualifiedNamespace"
    assert settings["OrgGuardBus__credential"] == "managedidentity"
    assert settings["OrgGuardBus__clientId"] == "identityClientId"
    assert settings["ORGGUARD_BUS"] == "servicebus"
    params = module_params("functions")
    assert dotted(params["busFullyQualifiedNamespace"]) == "serviceBus.outputs.fullyQualifiedNamespace"
    assert dotted(params["serviceBusFullyQualifiedNamespace"]) == "dataverseBus.outputs.fullyQualifiedNamespace"


def test_app_settings_configure_orgguard_for_azure() -> None:
    settings = app_settings()
    assert settings["ORGGUARD_AUTH"] == "easyauth"
    assert settings["ORGGUARD_LEDGER"] == "tables:${tableEndpoint}"
    assert variable("app/functions.bicep", "tableEndpoint").startswith("https://${storageAccountName}.table.")
    from_params = {
        "ORGGUARD_POLICY": "policyText",
        "ORGGUARD_GATE_ON_ERROR": "gateOnError",
        "ORGGUARD_SWEEP_SCHEDULE": "sweepSchedule",
    }
    assert {name: settings[name] for name in from_params} == from_params
    orgs = settings["ORGGUARD_ORGS"]["function"]
    assert orgs["type"] == "string" and [a for a in orgs["parameters"].values() if a] == ["orgsDocument"]
    assert param_default("main.bicep", "sweepSchedule") == "0 0 */6 * * *"
    assert param_default("main.bicep", "gateOnError") == "block"
    assert param_default("main.bicep", "sweepApply") is False
    deadline = settings["ORGGUARD_GATE_DEADLINE_S"]["function"]
    assert deadline["type"] == "string" and deadline["parameters"]["value_to_convert"] == "gateDeadlineSeconds"
    assert param_default("main.bicep", "gateDeadlineSeconds") == 10
    decorators = template("main.bicep")["parameters"]["gateDeadlineSeconds"]["decorators"]
    assert {"type": "max_value", "argument": 54} in decorators  # what Settings accepts: under 55 s
    passed = module_params("functions")
    assert passed["policyText"]["function"]["type"] == "load_text_content"
    assert [a for a in passed["policyText"]["function"]["parameters"].values() if a] == ["policy.yaml"]
    assert passed["orgs"] == "orgs"


def test_every_org_names_the_key_setting_the_templates_create() -> None:
    """orgs.yaml's webhook_key env:NAME and the Key Vault reference setting NAME are built by one expression."""
    orgs = body({"config": variable("app/functions.bicep", "orgsDocument")["orgs"]})
    keys = body({"config": variable("app/functions.bicep", "orgKeyAppSettings")})
    assert orgs["webhook_key"] == "env:" + keys["name"]
    assert keys["name"].startswith("ORGGUARD_KEY_${")
    assert keys["value"] == "@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=orgguard-key-${org.name})"
    assert {"name", "id", "url"} <= orgs.keys()
    script = (INFRA / "scripts" / "new-webhook-key.sh").read_text()
    assert '--name "orgguard-key-$org"' in script, "the script must write the secret the reference names"


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
    loop = app_settings()["<orgKeyAppSettings loop>"]
    assert loop.startswith("@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=")
    # The one *_CONNECTION_STRING is Application Insights' (an identifier, local auth disabled), wired from its module.
    connection = dotted(module_params("functions")["applicationInsightsConnectionString"])
    assert connection == "monitoring.outputs.applicationInsightsConnectionString"


# --------------------------------------------------------------- Easy Auth


def test_easy_auth_sends_people_to_sign_in_and_leaves_only_dataverse_and_health_open() -> None:
    auth = body(only_resource("app/functions.bicep", "Microsoft.Web/sites/config"))
    assert auth["name"] == "authsettingsV2"
    props = auth["properties"]
    assert props["platform"]["enabled"] is True
    validation = props["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "RedirectToLoginPage"
    assert validation["redirectToProvider"] == "azureactivedirectory"
    assert validation["excludedPaths"] == "excludedPaths"
    anonymous = variable("app/functions.bicep", "anonymousPaths")
    assert {"/api/dataverse/*", "/api/health"} <= set(anonymous)
    admin = ("/api/cases", "/api/mailboxes", "/api/policy", "/api/sweeps", "/api/migrations", "/api/audit", "/api/me")
    for path in anonymous:
        assert path.rstrip("/*") not in ("", "/api"), f"{path} would open the admin API"
        assert "*" not in path or path == "/api/dataverse/*", f"{path}: only the Dataverse webhooks are a prefix"
        assert not path.startswith(admin), f"{path} is an admin route"
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "authClientId"
    assert "${authTenantId}" in aad["registration"]["openIdIssuer"]
    assert set(aad["validation"]["allowedAudiences"]) == {"api://${authClientId}", "authClientId"}
    assert "clientSecretSettingName" not in aad["registration"], "no client secret: ID tokens and bearer tokens only"
    decorators = template("main.bicep")["parameters"]["authClientId"]["decorators"]
    assert {"type": "min_length", "argument": 36} in decorators, "an unset AZURE_AUTH_CLIENT_ID must fail before Azure"


def test_the_documented_app_roles_are_the_ones_the_code_checks() -> None:
    roles = json.loads((INFRA / "app-roles.json").read_text())
    assert {r["value"] for r in roles} == {"OrgGuard.Reader", "OrgGuard.Approver", "OrgGuard.Admin"}
    assert len({r["id"] for r in roles}) == 3
    from shared.domain.auth import Role

    assert {r["value"] for r in roles} == {role.app_role for role in Role}, "shared/auth.py checks other names"


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
        "keyVaultName": "keyVault.outputs.name",
        "keyVaultUri": "keyVault.outputs.uri",
        "tableEndpoint": "storage.outputs.tableEndpoint",
    }
    assert {name: dotted(outputs[name]["value"]) for name in expected if name in outputs} == expected


def test_event_grid_is_opt_in() -> None:
    module = template("main.bicep")["modules"]["eventGrid"]
    assert module["config"]["condition"] == "deployEventGrid"
    assert param_default("main.bicep", "deployEventGrid") is False


def test_location_is_limited_to_flex_consumption_regions_and_azd_asks_for_one() -> None:
    location = template("main.bicep")["parameters"]["location"]
    allowed = next(d["argument"] for d in location["decorators"] if d["type"] == "allowed")
    assert {"westeurope", "eastus", "japaneast", "australiaeast"} <= set(allowed)
    assert "eastus2euap" not in allowed, "a canary region is not for customers"
    assert allowed == sorted(allowed) and len(allowed) == len(set(allowed))
    metadata = next(d["argument"] for d in location["decorators"] if d["type"] == "metadata")
    assert metadata == {"azd": {"type": "location"}}
    assert location["default"] is None, "azd prompts for it and passes AZURE_LOCATION"


def test_azd_parameters_come_from_the_azd_environment() -> None:
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert params["location"]["value"] == "${AZURE_LOCATION}"
    assert params["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    assert params["authClientId"]["value"] == "${AZURE_AUTH_CLIENT_ID}"
    placeholder = re.compile(r"\$\{[A-Z_]+(=[^}]*)?\}")
    literal = {n: e["value"] for n, e in params.items() if not placeholder.fullmatch(str(e["value"]))}
    assert not literal, f"literal values belong in the template defaults or the .bicepparam: {literal}"


def test_there_is_a_bicepparam_for_production() -> None:
    assert [p.name for p in BICEPPARAM_FILES] == ["main.prod.bicepparam"]
    text = BICEPPARAM_FILES[0].read_text()
    assert "using './main.bicep'" in text
    assert "param principalType = 'Group'" in text, "production grants an operators group, not one person"
    assert "readEnvironmentVariable('AZURE_AUTH_CLIENT_ID')" in text


def test_the_first_policy_is_valid_and_a_dry_run() -> None:
    from shared.config.policy_file import load_policy

    policy = load_policy((INFRA / "policy.yaml").read_text())
    assert policy.mode == "dry-run", "day one decides and records, writes nothing to the orgs"


def test_orgs_file_starts_empty_and_feeds_the_function_app() -> None:
    assert json.loads((INFRA / "orgs.json").read_text()) == []
    assert module_params("functions")["orgs"] == "orgs"
    loaded = variable("main.bicep", "orgs")
    assert loaded["function"]["type"] == "load_json_content"
    assert [a for a in loaded["function"]["parameters"].values() if a] == ["orgs.json"]
