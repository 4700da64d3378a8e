"""Tables (SQLAlchemy 2.x), API schemas (pydantic v2) and the database session scope."""
