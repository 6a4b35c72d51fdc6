"""The bus: OrgGuard's work queue and Dataverse's queue (``port.WorkQueue``), and decision events out
(``decisions.DecisionEvents``). Adapters: ``local`` (SQLite, for ``orgguard serve`` and the tests) and
``servicebus`` (Azure Service Bus, aio); ``decisions_file`` writes events to a file. Only
``shared.bootstrap`` builds them."""
