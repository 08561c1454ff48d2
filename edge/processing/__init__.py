"""The stages after the inbox: normalize → store → ledger, resumable from the database."""
