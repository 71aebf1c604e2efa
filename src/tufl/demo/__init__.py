"""Built-in demo: procedural synthetic and realistic driving scenes."""
