"""Azure Functions entry point: one FunctionApp, every trigger registered here.

The HTTP API (gate, event intake, admin API, dashboard) is one FastAPI app
behind ``AsgiFunctionApp``; Service Bus, Event Grid and timers are blueprints.
Nothing touches storage at import: the first invocation builds the container.
"""

import azure.functions as func

from functions import bus_triggers, timers
from functions.http_api import create_api

app = func.AsgiFunctionApp(app=create_api(), http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(bus_triggers.bp)
app.register_functions(timers.bp)
