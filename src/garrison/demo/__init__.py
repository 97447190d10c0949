"""`garrison demo`: a scripted tour of a real gateway on free loopback ports."""
