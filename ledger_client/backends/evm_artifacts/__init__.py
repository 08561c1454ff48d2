"""Committed solcjs output for contracts/ (ABI and bytecode JSON), rebuilt by
``node contracts/compile.mjs`` and compared by tests/ledger_client/test_contract_build.py."""
