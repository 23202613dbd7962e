"""Real parts for the tests: a throwaway PostgreSQL cluster, moto's S3 server, a Slack Web API server,
and a fault proxy. Each is started once per test session by the fixtures in tests/conftest.py."""
