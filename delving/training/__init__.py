"""Training, module by module in the order a run happens."""
