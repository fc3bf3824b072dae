"""What differs between warehouses (PostgreSQL, Redshift), the SQL templates rendering, and transaction retries."""
