"""The page's routes, one router per concern; each router's module says who may use it."""
