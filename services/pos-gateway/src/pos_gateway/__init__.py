"""The POS gateway: the only public entry point of the VIP credit and loyalty system."""
