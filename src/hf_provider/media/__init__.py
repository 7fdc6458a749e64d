"""Decoding of uploaded media (audio) into arrays the runtime's processors take."""
