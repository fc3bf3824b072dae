LOCK TABLE {{ target | qualified }} IN SHARE ROW EXCLUSIVE MODE
