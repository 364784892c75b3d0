"""Chain modules, one file each: their records, calls, queries and block steps
(run in order by deoss.chain.block.process_block)."""
