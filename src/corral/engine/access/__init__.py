"""Access to the controller: API tokens and the privacy of the state folder."""
