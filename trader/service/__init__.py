"""What every Bourse service process shares: bootstrap (flags, config, data dir, logging) and the
signal-driven run loop; plus the trader service's RPC API."""
