"""Misuses of entities that both checkers must flag (each marked line, nothing else)."""

from __future__ import annotations

from dbsystem import DatabaseManager
from dbsystem.orm import Entity, Field, Relation


class User(Entity, table="users"):
    id: int | None = Field(default=None, primary_key=True, auto_increment=True)
    username: str = Field(max_length=50, index=True)
    email: str = Field(unique=True)
    age: int = 0


class Post(Entity, table="posts"):
    id: int = Field(primary_key=True)
    user_id: int = Field(foreign_key="users.id")
    user: User | None = Relation(local_key="user_id")


db = DatabaseManager()

User.query(db).where(User.agee > 1)  # E: attr-defined reportAttributeAccessIssue
User.query(db).where(User.age > "x")  # E: operator reportOperatorIssue
User(username="a", email="b", age="x")  # E: arg-type reportArgumentType
User(email="b")  # E: call-arg reportCallIssue
User(username="a", email="b", nmae=3)  # E: call-arg reportCallIssue
User("a", "b")  # E: call-arg reportCallIssue
u = User(username="a", email="b")
u.age = "x"  # E: assignment reportAttributeAccessIssue
name: int = u.username  # E: assignment reportAssignmentType
User.query(db).where("age > 18")  # E: arg-type reportArgumentType
User.query(db).limit("10")  # E: arg-type reportArgumentType
User.get(db, 1).username  # E: union-attr reportOptionalMemberAccess
missing: User = User.query(db).first()  # E: assignment reportAssignmentType
Post.query(db).include(Post.user_id)  # E: arg-type reportArgumentType
Post.query(db).include(42)  # E: arg-type reportArgumentType
Post.query(db).order_by(Post.user).where(Post.user_id == 1).all()[0].user.id  # E: union-attr reportOptionalMemberAccess
