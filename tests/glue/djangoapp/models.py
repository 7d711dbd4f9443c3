from __future__ import annotations

from django.db import models


class Forum(models.Model):
    slug = models.CharField(max_length=50)

    class Meta:
        app_label = "djangoapp"


class Post(models.Model):
    forum = models.ForeignKey(Forum, on_delete=models.CASCADE)
    thread = models.IntegerField()
    author = models.IntegerField()
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "djangoapp"
