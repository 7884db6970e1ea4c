"""What runs against target databases: export, rectify, erase, retention, surrogates."""
