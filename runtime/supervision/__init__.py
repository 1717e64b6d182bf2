"""Engine processes: starting, probing, restarting; remote engines; nodes."""
