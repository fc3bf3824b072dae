SELECT COUNT(*) FROM {{ staging | ident }}
