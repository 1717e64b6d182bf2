"""Who is calling: named keys, their limits and quotas, and the usage metered for each."""
