"""What `make infra-check` checks besides syntax: the templates' meaning.

* specs.py: every resource body against Azure's REST API specifications
  vendored in infra/specs/ (property names, read-only and required
  properties), and every API version against infra/specs/versions.json.
* appsettings.py: the app settings the templates set against the ones the
  deployed code reads, both directions.
* parameters.py: parameter files and .bicepparam files against main.bicep.
"""
