"""The data scaling-law study: nested FundusGen subsets, one ``swift sft`` per subset, a power-law fit."""
