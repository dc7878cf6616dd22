//! Pull mode: the agent.
