"""Read what Dataverse says happened to a mailbox, and decide whether it is a claim.

Dataverse posts its ``RemoteExecutionContext`` as JSON to a webhook, in a Service
Bus message body, or as an Event Grid event's ``data``. The serializer behind it
(.NET ``DataContractJsonSerializer``) writes collections as ``{"key", "value"}``
pair arrays, typed values with ``__type`` annotations and dates as
``/Date(ms)/``; other producers (and Dataverse versions) write plain objects. This
package accepts both, decodes the typed values into plain Python, and refuses
anything else with :class:`~shared.domain.model.InvalidPayload` naming the field, so an
entry point can answer 400 without having changed anything (invariant 6).

* ``body``: the one size limit every payload is held to, and strict JSON;
* ``envelopes``: Event Grid / CloudEvents events and Service Bus properties;
* ``dotnet``: .NET values (pair arrays, ``/Date(ms)/``, OptionSetValue, EntityReference ...);
* ``context``: the ``RemoteExecutionContext`` of a mailbox message;
* ``rows``: the mailbox row as a payload states it, and which changes claim it;
* ``claims``: ``to_claim``, the claim a context makes for the org that sent it.

Pure code: no I/O, no Azure imports. The gate calls it on its cold path.
"""

from shared.dataverse.payloads.body import MAX_BODY, PayloadTooLarge, check_size
from shared.dataverse.payloads.claims import to_claim
from shared.dataverse.payloads.context import MAX_PARENT_DEPTH, Context, decode_value, loads_context, parse_context
from shared.dataverse.payloads.dotnet import EntityRef, parse_dotnet_date
from shared.dataverse.payloads.envelopes import (
    SERVICEBUS_PROPERTY_PREFIX,
    org_address,
    servicebus_org,
    servicebus_properties,
    servicebus_size_exceeded,
    unwrap_event,
)
from shared.dataverse.payloads.rows import MailboxRow

__all__ = [
    "MAX_BODY",
    "MAX_PARENT_DEPTH",
    "SERVICEBUS_PROPERTY_PREFIX",
    "Context",
    "EntityRef",
    "MailboxRow",
    "PayloadTooLarge",
    "check_size",
    "decode_value",
    "loads_context",
    "org_address",
    "parse_context",
    "parse_dotnet_date",
    "servicebus_org",
    "servicebus_properties",
    "servicebus_size_exceeded",
    "to_claim",
    "unwrap_event",
]
