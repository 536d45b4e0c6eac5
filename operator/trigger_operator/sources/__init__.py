"""I/O shell: reading a conditional Trigger's source (a ConfigMap key, any object's field, an HTTP
JSON document, a Prometheus instant query). Answers are raw JSON data; the pure ``conditions``
package decides what they mean."""
