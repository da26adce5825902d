"""One module per tab: layout and event wiring only; every handler calls into `core`."""
