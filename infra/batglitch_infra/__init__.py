"""AWS CDK app for batglitch: the stack, its settings and the one state-machine definition."""
