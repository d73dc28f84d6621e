"""The customer side: the pages a phone opens."""
