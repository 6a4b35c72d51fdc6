"""OrgGuard's core: domain, policy, service layer and the adapters behind ports."""
