"""One router per concern of SPEC section 5."""
