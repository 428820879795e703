from frappe_imagekit.cli import main

main()
