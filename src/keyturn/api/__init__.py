"""The edge: parse, call one service, render. No SQL, no crypto, no Redis here."""
