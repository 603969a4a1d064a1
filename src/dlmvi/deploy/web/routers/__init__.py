"""One router per concern of ``dlmvi serve``: the page, the server and model, one-call
prediction, and the page's two-step uploads."""
