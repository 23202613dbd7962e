"""Routes to a database: direct, through an SSH tunnel or a proxy; reachability and listing through them."""
