// Text-to-image and image-to-image workflows; see the files of this module.
