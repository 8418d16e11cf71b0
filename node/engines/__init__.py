"""Campus database engines behind one Protocol (node.engines.base.Engine)."""
