"""Azure Functions entry point: one FunctionApp, every trigger registered here.

The HTTP API (gate, event intake, admin API, the page) is one FastAPI app
behind ``AsgiFunctionApp``, built on its first call (functions/deferred_app.py),
so indexing the functions never loads FastAPI; Service Bus, Event Grid and
timers are blueprints. Nothing touches storage at import: the first invocation
builds the container.
"""

import azure.functions as func

from functions import bus_triggers, timers
from functions.deferred_app import ASGIApp, DeferredApp


def _api() -> ASGIApp:
    from functions.http_api import create_api

    return create_api()


app = func.AsgiFunctionApp(app=DeferredApp(_api), http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(bus_triggers.bp)
app.register_functions(timers.bp)
